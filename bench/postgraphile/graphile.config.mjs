// PostGraphile 5 as bench/reads_side_by_side.py runs it: the Amber preset over the bench's
// own schema (views and functions over coopnet's tables), read-only connections, a pool
// of 10 like coopnet's, no GraphiQL, no watch mode.
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

export default {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.BENCH_PG_URL,
      schemas: [process.env.BENCH_PG_SCHEMA],
      poolConfig: { max: 10 },
    }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.BENCH_PG_PORT),
    graphiql: false,
    watch: false,
  },
};
