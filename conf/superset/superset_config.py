"""Superset settings for the local stack (the Superset service in lakehouse/stack/apps.py).

Everything deployment-specific comes from the environment the service sets: the metadata
database URI and the secret key, never a committed value.
"""

import os

SQLALCHEMY_DATABASE_URI = os.environ["LAKEHOUSE_SUPERSET_METADATA_URI"]
SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SUPERSET_WEBSERVER_TIMEOUT = 120
