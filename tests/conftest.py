"""Test configuration shared by every test module.

gevent must patch the standard library before anything opens a socket; `make test` already runs
pytest under `python -m gevent.monkey`, and this keeps a plain `pytest` run correct too.
"""
from gevent import monkey

monkey.patch_all()

# Fixtures live in modules of their own so that each side of the project owns its file:
#   fixtures_freeswitch: the test FreeSWITCH (tests/fake_freeswitch/) and pools over it
#   fixtures_web: a fresh database and the real HTTP server on port 0
#   fixtures_hotdesk: an office of phones and hotdesk users for the hotdesk Lua scripts
pytest_plugins = ["fixtures_freeswitch", "fixtures_web", "fixtures_hotdesk"]
