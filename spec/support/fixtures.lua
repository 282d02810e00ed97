-- The fake's payload builders, shared with the specs (one copy: telnyx/sim/fake/fixtures.lua).
return require "telnyx.sim.fake.fixtures"
