from deepseek.cli.main import main

main()
