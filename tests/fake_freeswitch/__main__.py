"""``python tests/fake_freeswitch [--port N] [--workers N]`` or, from tests/,
``python -m fake_freeswitch``: serve a test FreeSWITCH until killed."""
from gevent import monkey

monkey.patch_all()  # first, before anything imports socket or ssl

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as a folder, Python puts the package's own folder first on the path (where its module
# names could shadow others) and not the folder that holds it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from fake_freeswitch.cli import main  # noqa: E402

main()
