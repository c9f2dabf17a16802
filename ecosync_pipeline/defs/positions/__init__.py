"""The positions domain: position assets and checks, the recovery job, the loss sensor."""
