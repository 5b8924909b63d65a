"""The stream processor's Kafka runtime: consumer groups with manual commits, a changelog-backed
table and the loop that runs one role's handler.

Why not faust: faust-streaming 0.15.3 lost documents in our crash test in three ways (records
prefetched before a rebalance skipped *and acked*, streams resumed from Kafka before seeking to
the committed offsets, partitions that stopped being consumed after a restart; upstream issues
216, 221, 606 and 175 describe the same). This runtime keeps the guarantees we need small enough
to read: an offset is committed only after everything its record caused is on Kafka.
Must not live here: anything about documents, pages or the OCRFlux algorithm.
"""
