"""Container networks: bridge driver, IPAM, nftables, the embedded DNS server (see
pyrt.networks.service)."""
