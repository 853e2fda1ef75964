/** @type {import('next').NextConfig} */
// NEXT_PUBLIC_* values are inlined at BUILD time, as in CodeFRAME: a build is tied to the
// backend address it was built for. slipway builds each release for its own ports.
module.exports = {
  reactStrictMode: true,
  poweredByHeader: false,
};
