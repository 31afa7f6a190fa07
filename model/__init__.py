"""The learning side of rankae-tagger: Rank-AE, its data, training, checkpoints and predict API.

Nothing in here talks to Kafka or Redis.
"""
