/*
 * The page's state: the conversation shown, its messages, the run being followed live. One object
 * that the modules read and change in place.
 */

// ---------------------------------------------------------------- state
export const state = {
  me: '', // the signed-in user's name (drafts are kept per user)
  role: '', // 'admin' or 'user' (from /api/me): only an admin is shown the operator's instructions
  conversations: [],
  currentId: null,
  title: '',
  messages: [], // {index, role, content, images, tool_steps, error, streaming, stopped, interrupted, approval}
  stream: null, // the run of the shown conversation being followed live (js/runs.js), or null
  pendingImages: [], // {name, dataUrl, size}
  pendingFiles: [], // {name, size, type, path} (js/files.js); `path` is null while it uploads
  stickToBottom: true,
  loadSeq: 0,
  clockSkew: 0, // server clock minus this clock, ms (from the Date header; for the approval countdown)
};
