"""The Spark job: read photos -> featurize -> fit scaler + PCA -> write features and the artifact bundle."""
