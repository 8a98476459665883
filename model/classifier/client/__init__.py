"""The API's HTTP client (``classify`` and the dashboard): calls, retries and SigV4 signing.

May import only ``classifier.config``: the dashboard image holds this folder, that module and nothing else.
"""
