"""Plan documents: validation (`lakehouse.plans.schema`), PATCH merges (`lakehouse.plans.merge`)."""
