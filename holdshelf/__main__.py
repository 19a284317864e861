from holdshelf.cli import main

main()
