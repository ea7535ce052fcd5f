-- meta: runs no test within 20 s
-- A file whose tests are all filtered out by a typo'd tag reads as
-- "0 successes / 0 failures": nothing ran, which is not a pass.
describe("meta", function() end)
