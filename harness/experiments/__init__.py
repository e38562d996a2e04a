"""Experiments across independently sampled networks: sampling, statistics, the paper's claims.

One network is never enough (Jansen et al., "Once is Never Enough", USENIX Security 2021):
a confidence interval for a Tor performance metric must come from k networks sampled
independently from the relay population, one value per network, so more downloads inside
one network make the estimate sharper but never narrow the interval.
"""
