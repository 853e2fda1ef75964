"use client";
import { useEffect, useState } from "react";

const API_URL = process.env.NEXT_PUBLIC_API_URL || "http://127.0.0.1:8000";
const WS_URL = process.env.NEXT_PUBLIC_WS_URL || "ws://127.0.0.1:8000/ws";

// Shows the backend's /health and a live WebSocket ping, from the browser.
export default function Status() {
  const [health, setHealth] = useState(null);
  const [ws, setWs] = useState("connecting");
  useEffect(() => {
    fetch(`${API_URL}/health`)
      .then((r) => r.json())
      .then(setHealth)
      .catch((e) => setHealth({ status: "unreachable", error: String(e) }));
    const socket = new WebSocket(WS_URL);
    socket.onopen = () => socket.send(JSON.stringify({ type: "ping" }));
    socket.onmessage = (m) => setWs(JSON.parse(m.data).type === "pong" ? "connected" : "odd reply");
    socket.onerror = () => setWs("error");
    return () => socket.close();
  }, []);
  return (
    <dl>
      <dt>Backend</dt>
      <dd id="backend-status">{health ? `${health.status} ${health.version || ""}` : "loading"}</dd>
      <dt>WebSocket</dt>
      <dd id="ws-status">{ws}</dd>
    </dl>
  );
}
