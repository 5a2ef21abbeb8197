from cnnexp.cli import main

raise SystemExit(main())
