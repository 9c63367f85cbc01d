"""python -m harness: one Hydra job per cell (dataset, sampler, S, eta); ``-m`` sweeps, e.g. ``-m eta=0,0.2,0.5,1 S=10,20,50,100``."""

from harness.app import main

if __name__ == "__main__":
    main()
