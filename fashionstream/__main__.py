from fashionstream.cli import main

raise SystemExit(main())
