// Compiled (never run) by test/package.test.mjs: the declarations of the
// CommonJS build, through the package's exports, as a require() consumer
// sees them.
import tollgate = require('@tollgate/client');

const tg = new tollgate.Tollgate({ url: 'http://127.0.0.1:8080' });
export const used: Promise<number | null> = tg.consume({ key: 'k', policy: 'p' }).then((r) => r.used);
export const isAuth = (e: unknown): boolean => e instanceof tollgate.TollgateAuth;
