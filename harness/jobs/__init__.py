"""Job kinds: ``sample`` (FID cells, Table 1/3), ``recon`` (Table 2) and ``timing`` (Figure 4)."""
