"""The embedded ``local`` provider: signs with a certificate on disk, in worker
processes of its own pool.
"""
