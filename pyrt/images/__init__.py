"""Images: the registry client, credentials, pull/push transfers and their progress events.

Modules load lazily (the CLI's import path stays lean):
    pyrt.images.registry   RegistryClient, Unauthorized (OCI distribution spec over HTTP)
    pyrt.images.auth       docker config.json credentials, login, logout
    pyrt.images.transfer   pull, push, PullResult, PushResult
    pyrt.images.progress   ProgressEvent, ProgressKind, ProgressRecorder
"""
