"""``python -m baton``: the services are started this way (``baton run ...``), so that path loads only what a
service needs, not every command of the CLI (the bench's plotting, the demo...): a restart after a crash is
back sooner."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "run":
    from baton.run_cli import run_app

    sys.argv = [f"{sys.argv[0]} run", *sys.argv[2:]]
    run_app()
else:
    from baton.cli import main

    main()
