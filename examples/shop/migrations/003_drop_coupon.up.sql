-- Contract: generation 2 no longer uses coupons. Generation 1 breaks without this column, so
-- lockstep runs this only once no pod of generation 1 is left.
ALTER TABLE orders DROP COLUMN coupon;
