from fashionstream.app.cli import main

raise SystemExit(main())
