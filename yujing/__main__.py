from yujing.cli import main

raise SystemExit(main())
