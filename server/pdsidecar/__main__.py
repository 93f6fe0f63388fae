from pdsidecar.cli import main

raise SystemExit(main())
