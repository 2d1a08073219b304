"""The running service: the daemon, its web listener, status page and gauges, and the
status report and recovery the commands share.
"""
