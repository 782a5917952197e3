-- The last block height at which a recorded transaction can still land: until the
-- chain is past it, a resumed order sends the same bytes again and never signs anew.
-- NULL for transactions recorded before it was kept (they are confirmed by waiting).
ALTER TABLE order_txs ADD COLUMN last_valid_block_height bigint;

-- What a fill cost and where it landed (slot, commitment, venue and network fees,
-- price impact, effective price), as the confirmed event carried it; for a swap that
-- landed and reverted, its slot and the network fee it still paid.
ALTER TABLE orders ADD COLUMN fill jsonb;
