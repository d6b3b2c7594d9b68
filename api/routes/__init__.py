"""One router per resource (api/routes/<resource>.py), included by api.main.create_app."""
