from kawa.cli.main import main

main()
