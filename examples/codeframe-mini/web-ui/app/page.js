import Status from "./status";

export default function Home() {
  return (
    <main>
      <h1 id="app-marker">CodeFRAME mini</h1>
      <p>API: {process.env.NEXT_PUBLIC_API_URL || "(default)"}</p>
      <Status />
    </main>
  );
}
