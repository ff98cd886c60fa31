"""Project wiring: settings from the environment, root URLs, API routing, WSGI. Imports every app; no app imports it."""
