"""The release-outcome campaign: many seeded, randomised releases of the sample application on
the local cluster, each judged against the outcome it must end in (`make campaign`)."""
