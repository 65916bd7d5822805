# peewee as `Any` for mypy. peewee 4.5 ships its own stubs, and they refuse its documented API
# (`FixedCharField(max_length=...)`, `ModelSelect.tuples()` rows typed as model instances), so
# mypy would check those stubs instead of our code. This file on `mypy_path` shadows them.
from typing import Any

def __getattr__(name: str) -> Any: ...
