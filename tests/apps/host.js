// A test MCP Apps host, built on the official host side of the MCP Apps SDK: AppBridge and
// PostMessageTransport from @modelcontextprotocol/ext-apps/app-bridge, and the official MCP
// client (@modelcontextprotocol/client) talking to the real analytics-mcp server through
// /mcp on this page's origin (tests/test_result_view.py forwards it, adding the bearer token).
//
// It does what a web host such as claude.ai does: connect declaring the MCP Apps extension,
// find the tool's `_meta.ui.resourceUri` in tools/list, read the view with resources/read, load
// it in a sandbox proxy on another origin (sandbox.html) under the CSP built from the view's
// `_meta.ui.csp`, then hand it the tool input and the real tool result.
//
// Bundled for the browser by esbuild (pinned in package.json) into host.bundle.js.

import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  buildAllowAttribute,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const HOST_INFO = { name: "analytics-mcp-test-host", version: "1.0.0" };
const UI_EXTENSION = "io.modelcontextprotocol/ui";

const THEMES = {
  light: {
    "--color-background-primary": "#ffffff",
    "--color-background-secondary": "#f4f4f2",
    "--color-text-primary": "#191919",
    "--color-text-secondary": "#4d4d4d",
    "--color-border-primary": "#d0d0cc",
    "--font-sans": "sans-serif",
  },
  dark: {
    "--color-background-primary": "#1a1a19",
    "--color-background-secondary": "#262624",
    "--color-text-primary": "#f4f4f0",
    "--color-text-secondary": "#b8b8b2",
    "--color-border-primary": "#4a4a46",
    "--font-sans": "sans-serif",
  },
};

function hostContext(theme, tool) {
  return {
    theme,
    styles: { variables: THEMES[theme] },
    displayMode: "inline",
    availableDisplayModes: ["inline"],
    containerDimensions: { maxHeight: 900 },
    platform: "web",
    locale: "en-GB",
    toolInfo: tool ? { tool } : undefined,
  };
}

let current = null;

// Connects, renders the view for one tool call and resolves with what the test checks next to
// the DOM: the tool's _meta, the resource's metadata and the raw tool result.
async function run({ tool: toolName, args, era = "legacy", version, theme = "light", sandboxUrl }) {
  const log = [];
  const client = new Client(HOST_INFO, {
    capabilities: { extensions: { [UI_EXTENSION]: { mimeTypes: [RESOURCE_MIME_TYPE] } } },
    ...(era === "modern" ? { versionNegotiation: { mode: { pin: "2026-07-28" } } } : {}),
    ...(version ? { supportedProtocolVersions: [version] } : {}),
  });
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  log.push("connected " + (client.getNegotiatedProtocolVersion?.() ?? ""));
  const serverCapabilities = client.getServerCapabilities();
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === toolName);
  if (!tool) throw new Error(`tool ${toolName} not in tools/list`);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`tool ${toolName} names no view: ${JSON.stringify(tool._meta)}`);
  const resource = await client.readResource({ uri });
  const content = resource.contents[0];
  if (content.mimeType !== RESOURCE_MIME_TYPE) throw new Error(`view has mimeType ${content.mimeType}`);
  const html = "blob" in content ? atob(content.blob) : content.text;
  const ui = content._meta?.ui ?? {};

  // the sandbox proxy: another origin, CSP from the resource's metadata (sandbox.html?csp=…)
  const frame = document.createElement("iframe");
  frame.id = "view";
  frame.title = "analytics-mcp result view";
  frame.setAttribute("sandbox", "allow-scripts allow-same-origin");
  const allow = buildAllowAttribute(ui.permissions);
  if (allow) frame.setAttribute("allow", allow);
  const proxyReady = new Promise((resolve) => {
    const listener = (event) => {
      if (event.source === frame.contentWindow && event.data?.method === "ui/notifications/sandbox-proxy-ready") {
        window.removeEventListener("message", listener);
        resolve();
      }
    };
    window.addEventListener("message", listener);
  });
  const src = new URL(sandboxUrl);
  src.searchParams.set("csp", JSON.stringify(ui.csp ?? {}));
  frame.src = src.href;
  document.getElementById("conversation").appendChild(frame);
  await proxyReady;

  const bridge = new AppBridge(
    client,
    HOST_INFO,
    { openLinks: {}, serverTools: serverCapabilities?.tools, serverResources: serverCapabilities?.resources, logging: {} },
    { hostContext: hostContext(theme, tool) },
  );
  const sizes = [];
  bridge.onsizechange = ({ height }) => {
    sizes.push(height);
    if (height !== undefined) frame.style.height = `${Math.min(height, 900)}px`;
  };
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  await bridge.sendSandboxResourceReady({ html, csp: ui.csp, permissions: ui.permissions });
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  const result = await client.callTool({ name: toolName, arguments: args });
  await bridge.sendToolResult(result);
  current = { bridge, client, tool, theme, sizes };
  return {
    log,
    protocolVersion: client.getNegotiatedProtocolVersion?.() ?? null,
    serverCapabilities,
    toolMeta: tool._meta ?? null,
    resourceMeta: content._meta ?? null,
    listedResources: (await client.listResources()).resources,
    htmlBytes: new TextEncoder().encode(html).length,
    appVersion: bridge.getAppVersion() ?? null,
    resultText: result.content?.[0]?.text ?? null,
    resultTexts: (result.content ?? []).map((block) => block.text ?? null),
    isError: result.isError === true,
    sizes,
  };
}

function setTheme(theme) {
  current.theme = theme;
  current.bridge.setHostContext(hostContext(theme, current.tool));
}

async function teardown() {
  if (!current) return null;
  const answer = await current.bridge.teardownResource({ reason: "test finished" });
  return answer;
}

// Hands the view a result the server does not (yet) produce, e.g. another answer shape.
async function sendResult(result) {
  await current.bridge.sendToolResult(result);
}

async function cancel(reason) {
  await current.bridge.sendToolCancelled({ reason });
}

async function readClipboard() {
  return navigator.clipboard.readText();
}

window.testHost = { run, setTheme, teardown, sendResult, cancel, readClipboard, sizes: () => current?.sizes ?? [] };
document.documentElement.dataset.hostReady = "1";
