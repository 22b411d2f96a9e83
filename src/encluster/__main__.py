from .cli import main

if __name__ == "__main__":  # python -m encluster; importing this module (docs tools do) runs nothing
    raise SystemExit(main())
