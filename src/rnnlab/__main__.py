from .cli import main

if __name__ == "__main__":  # also safe when worker processes are spawned
    main()
