from context_forcing.cli import main

raise SystemExit(main())
