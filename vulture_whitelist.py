"""Names vulture cannot see used (run by `make lint`): each is read by a framework or by name."""
# ruff: noqa: F821, B018
# peewee reads each model's Meta class and the fields it declares.
Meta
legacy_table_names
indexes
primary_key
modified  # a column written on every update (documents.update_document), never read back
# Flask calls the app's hooks and reads these attributes.
begin
cross_origin
represent
_.sort_keys
_.merge_slashes  # werkzeug's Map reads it when the app's rules are bound
_.auth_token  # on flask.g, read by the envelope (g.get("auth_token"))
_.jsonp  # on flask.g, read by the represent hook (g.get("jsonp"))
# gevent's WSGIServer builds its handlers from handler_class and reads max_accept.
handler_class
_.max_accept
_._handle_client_error  # gevent's handler calls it on a malformed request
# gunicorn: the worker's server factory, the application's config hook, a hook's signature.
server_class
_.load_config
arbiter
# prometheus_client calls a custom collector's describe() and collect().
_.describe
_.collect
# configparser reads optionxform (tests/test_deploy.py keeps option names' case).
_.optionxform
# jsonschema calls type checkers as checker(checker, instance).
checker
# __exit__'s signature; a test HTTP stub's handler signature.
exc_info
request_body
# Public API of esl_bridge (usable without web/): the pool's listeners and registration refresh.
_.remove_event_listener
_.refresh_registrations
# The Lua harness: methods and attributes the Lua scripts reach by name through lupa.
_.slept_ms
_._answered
_._ready
_._getVariable
_._get_uuid
_._streamFile
_._sleep
_._playAndGetDigits
_._execute
sample_count
digit_timeout
transfer_on_failure
# psycopg2: a connection attribute that is set, not read by our code.
_.autocommit
# gunicorn: the arbiter calls its signal handlers by name.
_.handle_usr2
