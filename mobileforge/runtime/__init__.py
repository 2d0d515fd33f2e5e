"""Running artifacts without the compiler: ``.pte`` through ExecuTorch's runtime (:mod:`.pte`) and
the accuracy of any artifact (:mod:`.evaluate`)."""
