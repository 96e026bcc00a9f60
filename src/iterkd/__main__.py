from iterkd.cli import main

main()
