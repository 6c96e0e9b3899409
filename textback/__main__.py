from textback.cli import main

main()
