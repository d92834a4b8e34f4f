/*
 * The page's state: the conversation shown, its messages, the running request. One object that the
 * modules read and change in place.
 */

// ---------------------------------------------------------------- state
export const state = {
  conversations: [],
  currentId: null,
  title: '',
  messages: [], // {index, role, content, images, tool_steps, error, streaming, stopped}
  controller: null, // AbortController of the running /api/chat request
  pendingImages: [], // {name, dataUrl, size}
  stickToBottom: true,
  loadSeq: 0,
};
