from assign.cli import main

main()
