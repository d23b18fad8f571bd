"""The Label Studio integration: labelling config, tasks, push, pull, the API client and a local server."""
