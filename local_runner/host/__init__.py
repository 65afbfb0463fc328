"""The in-process Functions host: runs the app's functions here as the Functions host would.

It loads the app through its entry module as the Python worker does, delivers blob and queue
triggers by polling Azurite, drives orchestrators through the real Durable SDK with history in the
host's V3 schema, runs activities, timers and external events, and serves the HTTP functions.
Production runs on the Functions host; nothing in function_app or orchestrations depends on this.
"""
