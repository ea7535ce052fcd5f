-- The fleet's routing table: every job goes to the v1 workers.
-- Edit it while the fleet runs (e.g. split jobs between v1 and v2).
return {
  { match = "jobs.>", rewrite = "work.v1.>", dead_letter = "jobs.unrouted" },
}
