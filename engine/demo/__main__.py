from engine.demo.run import main

main()
