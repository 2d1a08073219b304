"""The running service: the daemon, its web listener and status page, the state
folder's lock, and the status report and recovery the commands share.
"""
