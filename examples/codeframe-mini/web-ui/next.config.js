/** @type {import('next').NextConfig} */
// NEXT_PUBLIC_* values are inlined at BUILD time, as in CodeFRAME. slipway passes the
// environment's public backend address (the router's port in blue-green), so one build
// serves either colour. Rewrites to the backend must use that address too.
module.exports = {
  reactStrictMode: true,
  poweredByHeader: false,
};
