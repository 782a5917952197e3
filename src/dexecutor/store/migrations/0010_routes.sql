-- Best execution (SPEC §10): how an order asked to be routed (swapMode, amountOut,
-- maxAmountIn, dexes, excludeDexes, onlyDirectRoutes; NULL for the defaults), and the
-- route its latest attempt took (the legs, the totals, the best single venue beside
-- them, the arrival mid), from which its execution quality is reported.
ALTER TABLE orders
    ADD COLUMN routing jsonb,
    ADD COLUMN route   jsonb;
