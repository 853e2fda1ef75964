// A dynamic route: answered per request by the running server, never frozen at build.
export const dynamic = "force-dynamic";

export async function GET() {
  return Response.json({
    status: "ok",
    api_url: process.env.NEXT_PUBLIC_API_URL || null,
    release: process.env.SLIPWAY_RELEASE || null,
    time: new Date().toISOString(),
  });
}
