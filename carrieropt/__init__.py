"""carrieropt: SIM rate-plan optimizer — project package and base app."""
